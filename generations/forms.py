"""The studio's create form, driven by the chosen provider account's capabilities."""

from __future__ import annotations

from django import forms

from providers.models import ProviderAccount


class StudioForm(forms.Form):
    """Provider account → model → mode → (duration, resolution), plus prompt and image.

    Choices narrow as selections change: each field offers only what the provider's
    ``capabilities`` allow for the fields above it. An invalid earlier pick falls back to
    the first valid option so the form always shows a priceable combination.
    """

    provider_account = forms.ModelChoiceField(queryset=ProviderAccount.objects.none(), empty_label=None, label="Provider")
    model = forms.ChoiceField(label="Model")
    mode = forms.ChoiceField(label="Mode")
    duration = forms.TypedChoiceField(coerce=int, label="Duration")
    resolution = forms.ChoiceField(label="Resolution")
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Describe the video: subject, action, camera, light…"}),
        label="Prompt",
        required=False,
    )
    image_url = forms.URLField(
        required=False, label="First-frame image URL", assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/first-frame.jpg"}),
    )
    image_file = forms.FileField(
        required=False, label="…or upload the first frame",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
    )

    OPTION_PREFIX = "opt_"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        accounts = list(ProviderAccount.objects.filter(enabled=True).order_by("priority", "label"))
        self.fields["provider_account"].queryset = ProviderAccount.objects.filter(enabled=True).order_by("priority", "label")
        source = self.data if self.is_bound else self.initial
        self.account = self._pick_account(accounts, source.get("provider_account"))
        self.model_cap = self.mode_cap = None
        if self.account is None:
            return
        caps = self.account.adapter_cls.capabilities
        self.fields["model"].choices = [(m.id, m.label) for m in caps.models]
        self.model_cap = caps.model(source.get("model") or "") or caps.models[0]
        self.fields["mode"].choices = [(m.id, m.label) for m in self.model_cap.modes]
        self.mode_cap = self.model_cap.mode(source.get("mode") or "") or self.model_cap.modes[0]
        self.fields["duration"].choices = [(d, f"{d} s") for d in self.mode_cap.durations]
        resolutions = self.mode_cap.resolutions
        self.fields["resolution"].choices = [(r, r) for r in resolutions]
        if self.mode_cap.image == "none":
            self.fields["image_url"].widget = forms.HiddenInput()
            del self.fields["image_file"]
        self.option_names = []
        for spec in (*self.mode_cap.options, *caps.account_options):
            self.fields[self.OPTION_PREFIX + spec.name] = self._option_field(spec)
            self.option_names.append(spec.name)
        if self.model_cap.prompt_max_chars:
            self.fields["prompt"].widget.attrs["maxlength"] = self.model_cap.prompt_max_chars
        # Keep the picks consistent with the narrowed choices (bound data or initial values).
        picks = {"provider_account": str(self.account.pk), "model": self.model_cap.id, "mode": self.mode_cap.id}
        if str(source.get("duration")) not in {str(d) for d in self.mode_cap.durations}:
            picks["duration"] = str(self.mode_cap.durations[0])
        if source.get("resolution") not in resolutions:
            picks["resolution"] = resolutions[0]
        if self.is_bound:
            data = self.data.copy()
            for key, value in picks.items():
                data[key] = value
            self.data = data
        else:
            self.initial = {**dict(self.initial or {}), **picks}

    def _option_field(self, spec):
        """A form field for one provider option (see ``providers.base.OptionSpec``)."""
        help_text = spec.help
        if spec.kind == "bool":
            return forms.BooleanField(required=False, label=spec.label, initial=bool(spec.default), help_text=help_text)
        if spec.kind == "choice":
            account_default = (self.account.options or {}).get(spec.name) or spec.default
            choices = [("", f"Default ({account_default})" if account_default else "Provider default")]
            choices += [(c, c) for c in spec.choices]
            return forms.ChoiceField(required=False, label=spec.label, choices=choices, help_text=help_text)
        if spec.kind == "image_url":
            return forms.URLField(
                required=spec.required, label=spec.label, assume_scheme="https", help_text=help_text,
                widget=forms.URLInput(attrs={"placeholder": "https://example.com/image.jpg"}),
            )
        return forms.CharField(required=spec.required, label=spec.label, help_text=help_text)

    def option_fields(self):
        return [self[self.OPTION_PREFIX + name] for name in getattr(self, "option_names", [])]

    def options(self) -> dict:
        """The chosen provider options (cleaned); empty choices and URLs are left out."""
        out = {}
        for name in self.option_names:
            value = self.cleaned_data.get(self.OPTION_PREFIX + name)
            if value in (None, ""):
                continue
            out[name] = value
        return out

    def clean(self):
        data = super().clean()
        if self.mode_cap is not None and self.mode_cap.image == "required":
            if not data.get("image_url") and not data.get("image_file"):
                self.add_error("image_url", "Give a first-frame image: a URL or an upload.")
        return data

    @staticmethod
    def _pick_account(accounts, wanted):
        for account in accounts:
            if str(account.pk) == str(wanted):
                return account
        return accounts[0] if accounts else None

    def selection(self) -> dict:
        """The current (possibly unvalidated) picks, for the price preview."""
        source = self.data if self.is_bound else self.initial
        if self.account is None:
            return {}
        duration = source.get("duration") or self.mode_cap.durations[0]
        try:
            duration = int(duration)
        except (TypeError, ValueError):
            duration = self.mode_cap.durations[0]
        resolution = source.get("resolution")
        if resolution not in self.mode_cap.resolutions:
            resolution = self.mode_cap.resolutions[0]
        return {
            "provider_account_id": self.account.pk,
            "model": self.model_cap.id,
            "mode": self.mode_cap.id,
            "duration": duration,
            "resolution": resolution,
        }
