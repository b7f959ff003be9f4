"""The batch form: the studio's shared settings (provider, model, mode, resolution, duration,
options, project, team) plus many prompts, pasted one per line or uploaded as a CSV."""

from __future__ import annotations

from django import forms

from generations.batches.parsing import CSV_COLUMNS, MAX_BATCH_ROWS, MAX_CSV_BYTES
from generations.forms import StudioForm


class BatchForm(StudioForm):
    """``StudioForm`` without the single prompt, the upload and the variants: the prompts come
    from ``lines`` (one per line) or ``csv_file`` (the CSV wins when both are given). The shared
    first-frame URL is optional here: a CSV row may bring its own ``image_url``; every row is
    checked against the provider's rules at the preview (``services.batch.batch_plan``)."""

    title = forms.CharField(required=False, max_length=200, label="Title", widget=forms.TextInput(attrs={"placeholder": "Spring campaign, first cut"}))
    lines = forms.CharField(
        required=False, label="Prompts, one per line",
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "a red kite over the dunes\na paper boat on a rainy street"}),
        help_text=f"At most {MAX_BATCH_ROWS}. Blank lines are skipped.",
    )
    csv_file = forms.FileField(
        required=False, label="…or upload a CSV",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
        help_text=(
            f"UTF-8, a header row with a “prompt” column; optional columns {', '.join(CSV_COLUMNS[1:])} override the "
            f"settings above for their row. At most {MAX_BATCH_ROWS} rows, {MAX_CSV_BYTES // 1024} KB."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("prompt", "image_file", "variants"):
            self.fields.pop(name, None)
        if "image_url" in self.fields and not isinstance(self.fields["image_url"].widget, forms.HiddenInput):
            self.fields["image_url"].label = "First-frame URL for every row (a CSV's image_url column overrides it)"

    def clean(self):
        data = forms.Form.clean(self)  # not StudioForm's: the first frame may come per row
        upload = data.get("csv_file")
        if upload is not None and upload.size > MAX_CSV_BYTES:
            self.add_error("csv_file", f"The file is larger than {MAX_CSV_BYTES // 1024} KB.")
        if not upload and not (data.get("lines") or "").strip():
            self.add_error("lines", "Paste prompts, one per line, or upload a CSV.")
        return data
