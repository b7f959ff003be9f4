from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Outbound webhooks"

    def ready(self) -> None:
        from webhooks import signals  # noqa: F401 (connects the GenerationEvent receiver)
