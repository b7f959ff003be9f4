from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers"

    def ready(self):
        from django.db.models.signals import post_save

        from generations.models import GenerationEvent
        from providers.alerts import generation_event_saved

        # Staff hear of account-level problems (402 no credit, 401 bad key): providers.alerts.
        post_save.connect(generation_event_saved, sender=GenerationEvent, dispatch_uid="providers.account_problem")
