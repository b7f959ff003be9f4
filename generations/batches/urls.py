from django.urls import path

from generations.batches import views

app_name = "batches"

urlpatterns = [
    path("new/", views.batch_new, name="new"),
    path("form/", views.batch_form, name="form"),
    path("confirm/", views.batch_confirm, name="confirm"),
    path("<uuid:batch_id>/", views.batch_detail, name="detail"),
    path("<uuid:batch_id>/progress/", views.batch_progress_view, name="progress"),
]
