from django.urls import path

from teamwork import library_views, views

app_name = "teamwork"

urlpatterns = [
    path("projects/", views.projects, name="projects"),
    path("projects/<int:project_id>/archive/", views.project_archive, name="project_archive"),
    path("projects/<int:project_id>/share/", views.share_project, name="share_project"),
    path("g/<uuid:generation_id>/star/", views.star, name="star"),
    path("g/<uuid:generation_id>/tags/", views.tags, name="tags"),
    path("g/<uuid:generation_id>/share/", views.share_generation, name="share_generation"),
    path("compare/", views.compare, name="compare"),
    path("links/<int:link_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("templates/", library_views.templates_page, name="templates"),
    path("templates/picker/", library_views.library_picker, name="library_picker"),
    path("templates/fill/", library_views.template_fill, name="template_fill"),
    path("templates/save/", library_views.template_save, name="template_save"),
    path("templates/<int:template_id>/use/", library_views.template_use, name="template_use"),
    path("templates/<int:template_id>/edit/", library_views.template_edit, name="template_edit"),
    path("templates/<int:template_id>/delete/", library_views.template_delete, name="template_delete"),
    path("g/<uuid:generation_id>/save-template/", library_views.template_from_generation, name="template_from_generation"),
    path("prompts/history/", library_views.history_menu, name="history_menu"),
    path("prompts/history/<uuid:generation_id>/use/", library_views.history_use, name="history_use"),
    path("settings/notifications/", library_views.notification_settings, name="notification_settings"),
    path("s/<str:token>/", views.shared, name="shared"),
    path("s/<str:token>/<uuid:generation_id>.mp4", views.shared_video, name="shared_video"),
    path("s/<str:token>/<uuid:generation_id>.jpg", views.shared_poster, name="shared_poster"),
]
