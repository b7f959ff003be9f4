"""The studio's create form, driven by the chosen provider account's capabilities."""

from __future__ import annotations

from django import forms

from generations.models import State
from generations.selectors import GalleryFilters
from providers.models import ProviderAccount
from providers.registry import ADAPTERS

#: Values of a checkbox that mean "checked" (form data, or a remixed generation's options).
_TRUE = {True, "on", "true", "True", "1"}


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
        required=False, label="…or its URL", assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/first-frame.jpg"}),
    )
    image_file = forms.FileField(
        required=False, label="Upload the first frame",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
    )

    project = forms.TypedChoiceField(required=False, label="Project", coerce=int, empty_value=None)
    #: "N variants" of this request in one submit (a batch: all held or none; generations.services.batch).
    variants = forms.TypedChoiceField(
        required=False, label="Variants", coerce=int, empty_value=1, initial=1, choices=[(n, str(n)) for n in range(1, 5)],
    )

    OPTION_PREFIX = "opt_"
    #: A hidden input listing the options the form showed: an unchecked checkbox sends nothing,
    #: so a re-render from the submitted values (the price refresh) would otherwise reset it to
    #: its default. An option named here but absent from the data is off.
    OPTIONS_MARKER = "_options"

    def __init__(self, *args, teams=None, projects=(), **kwargs):
        """``teams``: the member's teams, primary first; with two or more the form offers a
        "Book to team" choice (the budgets of the chosen team apply). ``projects``: (id, name)
        pairs of the member's teams' open projects (the switcher;
        ``teamwork.selectors.project_choices``); the view still checks the pick is visible, and
        a project books the take to the project's team."""
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [("", "No project"), *[(pk, name) for pk, name in projects]]
        self.teams = list(teams or [])
        if len(self.teams) > 1:
            self.fields["team"] = forms.ChoiceField(
                choices=[(str(t.pk), t.name) for t in self.teams], initial=str(self.teams[0].pk), label="Book to team", required=False,
                help_text="Its budgets and yours in it apply; spend is reported under it.",
            )
        accounts = list(ProviderAccount.objects.filter(enabled=True).order_by("priority", "label"))
        self.fields["provider_account"].queryset = ProviderAccount.objects.filter(enabled=True).order_by("priority", "label")
        # Render the choices from the list just read (validation still checks the queryset).
        self.fields["provider_account"].choices = [(a.pk, str(a)) for a in accounts]
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
        # Resolution first, then the durations that resolution allows (APIXO pro: 1080p 5 s only;
        # qingbo 1080p: 6 s only), so every pair offered is one the provider accepts.
        resolutions = self.mode_cap.resolutions
        self.fields["resolution"].choices = [(r, r) for r in resolutions]
        resolution = source.get("resolution") if source.get("resolution") in resolutions else resolutions[0]
        durations = sorted(d for d, r in self.mode_cap.combos if r == resolution)
        self.fields["duration"].choices = [(d, f"{d} s") for d in durations]
        duration = int(source["duration"]) if str(source.get("duration")) in {str(d) for d in durations} else durations[0]
        if self.mode_cap.image == "none":
            self.fields["image_url"].widget = forms.HiddenInput()
            del self.fields["image_file"]
        self.option_names = []
        # Only options that change the member's video: account-level settings (qingbo's model
        # naming) stay with the admin, and options without effect under them are left out.
        self.member_options = self.account.adapter_cls.member_options(self.mode_cap, self.account.options or {})
        for spec in self.member_options:
            self.fields[self.OPTION_PREFIX + spec.name] = self._option_field(spec)
            self.option_names.append(spec.name)
        if self.model_cap.prompt_max_chars:
            # No maxlength (it would cut a pasted prompt silently): a counter shows the limit and
            # a longer prompt is refused with a message (clean_prompt, and the adapter's validate).
            self.fields["prompt"].widget.attrs["data-max-chars"] = self.model_cap.prompt_max_chars
            self.fields["prompt"].widget.attrs["aria-describedby"] = "prompt-counter"
        self.picked = {
            "provider_account_id": self.account.pk, "model": self.model_cap.id, "mode": self.mode_cap.id,
            "duration": duration, "resolution": resolution,
        }
        # Keep the picks consistent with the narrowed choices (bound data or initial values).
        picks = {
            "provider_account": str(self.account.pk), "model": self.model_cap.id, "mode": self.mode_cap.id,
            "duration": str(duration), "resolution": resolution,
        }
        if self.is_bound:
            data = self.data.copy()
            for key, value in picks.items():
                data[key] = value
            self.data = data
        else:
            initial = {**dict(self.initial or {}), **picks}
            shown_account, shown = self._parse_marker(source.get(self.OPTIONS_MARKER))
            if shown_account is not None and shown_account != str(self.account.pk):
                # Another provider's options were on screen: its values mean nothing here (a
                # PoYo checkbox left unchecked must not turn qingbo's default-on optimizer off).
                # The new provider's options start at their documented defaults.
                initial = {k: v for k, v in initial.items() if not str(k).startswith(self.OPTION_PREFIX)}
            elif shown is not None:
                shown_names = set(shown.split(","))
                for spec in self.member_options:
                    if spec.kind == "bool" and spec.name in shown_names:
                        initial[self.OPTION_PREFIX + spec.name] = source.get(self.OPTION_PREFIX + spec.name) in _TRUE
            self.initial = initial

    @property
    def options_marker(self) -> str:
        """The value of the hidden ``_options`` input: ``"<account pk>:<option names, comma-separated>"``,
        the options this form shows and whose provider account they belong to."""
        account = self.account.pk if self.account is not None else ""
        return f"{account}:" + ",".join(getattr(self, "option_names", []))

    @staticmethod
    def _parse_marker(value) -> tuple[str | None, str | None]:
        """``"<account pk>:<names>"`` → (account pk, names); an older marker without the
        account gives (None, names); no marker gives (None, None)."""
        if value is None:
            return None, None
        account, sep, names = str(value).partition(":")
        return (account, names) if sep else (None, account)

    @property
    def image_rules(self):
        """The chosen model's first-frame rules (for the client-side preview hints), or None."""
        return self.model_cap.image_rules if self.model_cap is not None else None

    @property
    def image_rules_text(self) -> str:
        """The chosen model's first-frame rules in words with our pixel cap, e.g.
        "JPEG/PNG, ≤ 20 MB, ≤ 40 megapixels, short side > 300 px"."""
        from providers.images import describe_image_rules, max_pixels_setting

        rules = self.image_rules
        return describe_image_rules(rules, max_pixels=max_pixels_setting()) if rules is not None else ""

    @classmethod
    def initial_from_generation(cls, generation) -> dict:
        """Form values that recreate ``generation`` ("remix"): the same account, model, mode,
        duration, resolution, prompt, image and options."""
        initial = {
            "provider_account": str(generation.provider_account_id), "model": generation.model, "mode": generation.mode,
            "duration": str(generation.duration), "resolution": generation.resolution, "prompt": generation.prompt,
            "image_url": generation.image_url, "project": str(generation.project_id or ""),
        }
        options = generation.options or {}
        for name, value in options.items():
            initial[cls.OPTION_PREFIX + name] = value
        initial[cls.OPTIONS_MARKER] = f"{generation.provider_account_id}:" + ",".join(options)
        return initial

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

    def clean_prompt(self) -> str:
        """Refuse a prompt over the chosen model's documented limit (never cut it)."""
        prompt = self.cleaned_data.get("prompt") or ""
        limit = self.model_cap.prompt_max_chars if self.model_cap is not None else None
        if limit and len(prompt) > limit:
            raise forms.ValidationError(
                f"The prompt has {len(prompt):,} characters; {self.account.adapter_cls.label} accepts at most {limit:,} "
                f"for {self.model_cap.label}. Shorten it by {len(prompt) - limit:,}."
            )
        return prompt

    def clean(self):
        data = super().clean()
        if self.mode_cap is not None and self.mode_cap.image == "required":
            if not data.get("image_url") and not data.get("image_file"):
                self.add_error("image_url", "Give a first-frame image: a URL or an upload.")
        return data

    def variants_count(self) -> int:
        """The variants asked for (1 to 4; anything else counts as 1 for the price preview)."""
        source = self.data if self.is_bound else self.initial
        value = str(source.get("variants") or "1")
        return int(value) if value in {"1", "2", "3", "4"} else 1

    def booked_team(self):
        """The team picked in the form (a member's team), or None for the primary team."""
        if "team" not in self.fields:
            return None
        source = self.data if self.is_bound else self.initial
        wanted = str(source.get("team") or "")
        return next((t for t in self.teams if str(t.pk) == wanted), None)

    @staticmethod
    def _pick_account(accounts, wanted):
        for account in accounts:
            if str(account.pk) == str(wanted):
                return account
        return accounts[0] if accounts else None

    def selection(self) -> dict:
        """The current (possibly unvalidated) picks, for the price preview."""
        if self.account is None:
            return {}
        return dict(self.picked)


class GalleryFilterForm(forms.Form):
    """The gallery's filters (GET). Invalid values are ignored rather than reported."""

    q = forms.CharField(
        required=False, max_length=200, label="Search prompts",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Search prompts…", "autocomplete": "off"}),
    )
    state = forms.ChoiceField(required=False, label="Status")
    provider = forms.ChoiceField(required=False, label="Provider")
    model = forms.ChoiceField(required=False, label="Model")
    member = forms.TypedChoiceField(required=False, label="Member", coerce=int, empty_value=None)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    show_hidden = forms.BooleanField(required=False, label="Show hidden")
    project = forms.TypedChoiceField(required=False, label="Project", coerce=int, empty_value=None)
    starred = forms.BooleanField(required=False, label="Starred only")
    tag = forms.CharField(required=False, max_length=40, label="Tag", widget=forms.TextInput(attrs={"placeholder": "a tag"}))
    size = forms.TypedChoiceField(
        required=False, label="Per page", coerce=int, empty_value=24,
        choices=[(n, str(n)) for n in (12, 24, 48, 96)],
    )

    PAGE_SIZES = (12, 24, 48, 96)
    DEFAULT_SIZE = 24

    def __init__(self, data=None, *args, members=None, projects=None, **kwargs):
        """``members``: (id, email) pairs for the member filter; None accepts any id (the
        visibility filter still applies), which spares the query on fragment refreshes.
        ``projects``: (id, name) pairs for the project filter, the same way."""
        data = data.copy() if data is not None else {}
        if not data.get("size"):
            data["size"] = str(self.DEFAULT_SIZE)
        kwargs.setdefault("auto_id", "filter_%s")  # the create form on the same page has id_model
        super().__init__(data, *args, **kwargs)
        self.fields["state"].choices = [("", "Any status"), ("in_progress", "In progress"), *State.choices]
        self.fields["provider"].choices = [("", "Any provider"), *[(cls.kind, cls.label) for cls in ADAPTERS.values()]]
        # One entry per model family and version, not one per provider id.
        from providers.registry import model_families

        families = model_families()
        ids = {i: name for name, members in families.items() for i in members}
        if data.get("model") in ids:  # a link with a provider's id: show its family
            data["model"] = ids[data["model"]]
            self.data = data
        self.fields["model"].choices = [("", "Any model"), *[(name, name) for name in families]]
        if members is None:
            self.fields["member"] = forms.IntegerField(required=False, min_value=1)
        else:
            self.fields["member"].choices = [("", "Anyone"), *[(pk, email) for pk, email in members]]
        if projects is None:
            self.fields["project"] = forms.IntegerField(required=False, min_value=1)
        else:
            self.fields["project"].choices = [("", "Any project"), *[(pk, name) for pk, name in projects]]

    def filters(self) -> GalleryFilters:
        """The valid filters (an invalid field is dropped, the others still apply)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return GalleryFilters(
            state=data.get("state") or "", provider=data.get("provider") or "", model=data.get("model") or "",
            member=data.get("member") or None, date_from=data.get("date_from"), date_to=data.get("date_to"),
            q=(data.get("q") or "").strip(), show_hidden=bool(data.get("show_hidden")),
            project=data.get("project") or None, starred=bool(data.get("starred")),
            tag=(data.get("tag") or "").strip().lower(),
        )

    def page_size(self) -> int:
        self.is_valid()
        size = getattr(self, "cleaned_data", {}).get("size")
        return size if size in self.PAGE_SIZES else self.DEFAULT_SIZE
