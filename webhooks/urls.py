from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.index, name="index"),
    path("<uuid:endpoint_id>/", views.detail, name="detail"),
    path("<uuid:endpoint_id>/test/", views.test, name="test"),
    path("<uuid:endpoint_id>/rotate/", views.rotate, name="rotate"),
    path("<uuid:endpoint_id>/delete/", views.delete, name="delete"),
    path("<uuid:endpoint_id>/deliveries/<str:delivery_id>/redeliver/", views.redeliver, name="redeliver"),
]
