from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<uuid:generation_id>/approve/", views.approve, name="approve"),
    path("<uuid:generation_id>/reject/", views.reject, name="reject"),
    path("rules/<int:team_id>/", views.rule, name="rule"),
]
