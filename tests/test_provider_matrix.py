"""The README's provider matrix is generated from the capabilities and must be current."""

from pathlib import Path

import pytest

from billing.price_matrix import END, START, render_matrix
from providers.registry import ADAPTERS

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.django_db
def test_readme_matrix_is_current():
    text = README.read_text()
    block = text[text.index(START) + len(START) : text.index(END)].strip()
    assert block == render_matrix().strip(), "run: python manage.py provider_matrix --write"


@pytest.mark.django_db
def test_every_registered_provider_is_in_the_matrix():
    matrix = render_matrix()
    for cls in ADAPTERS.values():
        assert f"({cls.kind})" in matrix.replace("`", "")
        for model in cls.capabilities.models:
            assert f"`{model.id}`" in matrix
