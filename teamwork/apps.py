from django.apps import AppConfig


class TeamworkConfig(AppConfig):
    name = "teamwork"
    verbose_name = "Team work (projects, tags, share links, prompt library, notifications)"

    def ready(self):
        """Connect the notification emails to the lifecycle's ``GenerationEvent`` rows."""
        from django.db.models.signals import post_save

        from generations.models import GenerationEvent
        from teamwork.notifications import generation_event_saved

        post_save.connect(generation_event_saved, sender=GenerationEvent, dispatch_uid="teamwork.notifications.generation_event")
