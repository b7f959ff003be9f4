"""The studio's endpoint form."""

from django import forms

from accounts.models import Team
from webhooks.models import EventType


class EndpointForm(forms.Form):
    """URL, description, events, enabled and (on create) the owner: ``"me"`` or a team id the user administers."""

    url = forms.CharField(label="Endpoint URL", max_length=2000, widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/hailuo"}),
                          help_text="We POST signed JSON here (Standard Webhooks). It must be reachable on a public address.")
    description = forms.CharField(label="Description", max_length=200, required=False)
    events = forms.MultipleChoiceField(label="Events", choices=EventType.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[EventType.GENERATION_SUCCEEDED, EventType.GENERATION_FAILED])
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)
    owner = forms.ChoiceField(label="Owner", choices=[("me", "Me")], initial="me",
                              help_text="A team endpoint receives the events of every generation booked to the team.")

    def __init__(self, *args, admin_teams=(), with_owner: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if with_owner:
            self.fields["owner"].choices = [("me", "Me")] + [(str(t.pk), f"Team {t.name}") for t in admin_teams]
        else:
            del self.fields["owner"]

    def team_id(self) -> int | None:
        owner = self.cleaned_data.get("owner", "me")
        return None if owner in ("me", None) else int(owner)


__all__ = ["EndpointForm", "Team"]
