from django import forms
from django.contrib import admin, messages

from providers.models import ProviderAccount


class ProviderAccountForm(forms.ModelForm):
    """The API key is write-only: type a new one to replace it; leave blank to keep it."""

    new_api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored key.",
    )

    class Meta:
        model = ProviderAccount
        fields = ["kind", "label", "new_api_key", "base_url", "enabled", "priority", "options", "fallback", "down"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.api_key_encrypted:
            self.fields["new_api_key"].help_text = (
                f"Stored key: {self.instance.masked_key}. Write-only: type a new key to replace it; leave blank to keep it."
            )

    def clean(self):
        data = super().clean()
        fallback = data.get("fallback")
        if fallback is not None and (fallback.kind != data.get("kind") or fallback.pk == self.instance.pk):
            self.add_error("fallback", "The fallback must be another account of the same provider (it serves the same models).")
        if not self.instance.api_key_encrypted and not data.get("new_api_key"):
            self.add_error("new_api_key", "An API key is required for a new account.")
        return data

    def save(self, commit=True):
        account = super().save(commit=False)
        if self.cleaned_data.get("new_api_key"):
            account.set_api_key(self.cleaned_data["new_api_key"])
        if commit:
            account.save()
        return account


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    form = ProviderAccountForm
    list_display = ["label", "kind", "masked_key", "base_url_shown", "enabled", "priority"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled", "priority"]
    search_fields = ["label"]
    actions = ["test_connection"]

    @admin.action(description="Test connection (read the balance)")
    def test_connection(self, request, queryset):
        from providers.services import provider_account_check

        for account in queryset:
            check = provider_account_check(account=account)
            self.message_user(request, check.message, messages.SUCCESS if check.ok else messages.ERROR)

    @admin.display(description="API key")
    def masked_key(self, obj):
        return obj.masked_key

    @admin.display(description="Base URL")
    def base_url_shown(self, obj):
        return obj.effective_base_url
