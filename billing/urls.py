"""Finance pages, mounted at /reports/ (namespace ``reports``)."""

from django.urls import path, re_path

from billing import views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    re_path(r"^export\.(?P<ext>csv|xlsx)$", views.export, name="export"),
    re_path(
        r"^statements/(?P<team_id>[0-9]+)/(?P<month>[0-9]{4}-[0-9]{2})\.(?P<ext>csv|xlsx)$",
        views.statement,
        name="statement",
    ),
    path("reconciliation/", views.reconciliation_page, name="reconciliation"),
    path("reconciliation/snapshot/", views.snapshot_now, name="snapshot"),
]
