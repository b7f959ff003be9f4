from django.urls import path

from teamwork import views

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
    path("s/<str:token>/", views.shared, name="shared"),
    path("s/<str:token>/<uuid:generation_id>.mp4", views.shared_video, name="shared_video"),
    path("s/<str:token>/<uuid:generation_id>.jpg", views.shared_poster, name="shared_poster"),
]
