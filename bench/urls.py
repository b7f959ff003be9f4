"""The project's URLs plus ``/bench/trivial``: a view that answers ``ok`` without touching the database."""

from django.http import HttpResponse
from django.urls import include, path


def trivial(request):
    """The baseline: the same server, middleware and worker, no work."""
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("bench/trivial", trivial), path("", include("config.urls"))]
