from django.contrib import admin
from django.urls import include, path

from accounts import views as accounts_views
from billing import views as billing_views
from config.api import api
from config.health import healthz, healthz_live
from config.metrics import metrics_view
from generations import views

urlpatterns = [
    # The API first: Django tries the patterns in order, and the API's requests are the many
    # small ones (issue 16); no other pattern starts with "api/".
    path("api/v1/", api.urls),
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon),
    path("studio/", views.studio, name="studio"),
    path("studio/form/", views.form_fragment, name="studio_form"),
    path("studio/gallery/", views.gallery, name="studio_gallery"),
    path("studio/budget/", views.budget_badge, name="budget_badge"),
    path("g/<uuid:generation_id>/", views.detail, name="generation_detail"),
    path("g/<uuid:generation_id>/card/", views.card, name="generation_card"),
    path("g/<uuid:generation_id>/retry/", views.retry, name="generation_retry"),
    path("g/<uuid:generation_id>/cancel/", views.cancel, name="generation_cancel"),
    path("g/<uuid:generation_id>/save-again/", views.archive_retry, name="generation_archive_retry"),
    path("g/<uuid:generation_id>/hide/", views.set_hidden, {"hidden": True}, name="generation_hide"),
    path("g/<uuid:generation_id>/unhide/", views.set_hidden, {"hidden": False}, name="generation_unhide"),
    path("g/<uuid:generation_id>/video.mp4", views.video, name="generation_video"),
    path("g/<uuid:generation_id>/poster.jpg", views.poster, name="generation_poster"),
    path("u/<uuid:image_id>.<slug:ext>", views.input_image, name="input_image"),
    path("hooks/<slug:kind>/<uuid:generation_id>/<str:token>/", views.provider_callback, name="provider_callback"),
    path("team/<int:team_id>/budgets/", accounts_views.team_budgets, name="team_budgets"),
    path("tokens/", accounts_views.api_tokens, name="api_tokens"),
    path("me/spending/", billing_views.my_spending, name="my_spending"),
    path("reports/", include("billing.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("batches/", include("generations.batches.urls")),
    path("", include("teamwork.urls")),
    path("approvals/", include("approvals.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("healthz/live", healthz_live, name="healthz_live"),
    path("metrics", metrics_view, name="metrics"),
]
