"""qingbo's capabilities as data: options, models, modes with their (seconds, resolution)
combos, per-mode rules and the status map. The sources and the reading of what they leave out
are in ``adapter.py``'s docstring (../shared/seeds/003, providers.md section qingbo)."""

from __future__ import annotations

from providers.base import (
    ModeCapability,
    ModelCapability,
    OptionSpec,
    TaskState,
)

# --- options -------------------------------------------------------------------------------
#: seeds/003 "Model-Specific Parameters": ``extra.prompt_optimizer`` boolean, default true.
#: Sent only when the request sets it (absent = qingbo's default, true).
PROMPT_OPTIMIZER = OptionSpec(
    "prompt_optimizer", "Prompt optimizer", "bool", default=True,
    help="Let Hailuo rewrite the prompt (extra.prompt_optimizer; qingbo's default is on).",
)

#: seeds/003 "Model-Specific Parameters": ``extra.fast_pretreatment`` boolean, no default given
#: (not sent unless asked). Offered on the hailuo-2.3 series and hailuo-02: ``extra`` is
#: "passed through to Hailuo", and the maker documents fast pretreatment for those models only.
FAST_PRETREATMENT = OptionSpec(
    "fast_pretreatment", "Fast pretreatment", "bool",
    help="Shorter prompt optimisation (extra.fast_pretreatment).",
)

#: seeds/003 "Common Parameters": ``last_frame`` "Last frame image URL, requires image_urls.
#: hailuo-02 only"; "Generation Modes": First/Last frame = image_urls (1 image) + last_frame.
LAST_FRAME = OptionSpec(
    "last_frame", "Last frame", "image_url", required=True,
    help="URL of the last frame (the first frame is the image).",
)

#: seeds/003 "Model-Specific Parameters", ``extra.subject_reference``:
#: ``[{"type": "character", "image": [url]}]``; "Generation Modes": Character reference =
#: prompt + extra.subject_reference.
SUBJECT_IMAGE = OptionSpec(
    "subject_image", "Character image", "image_url", required=True,
    help="URL of the character to keep consistent (extra.subject_reference).",
)

ASPECT_RATIOS = ("16:9", "9:16", "1:1")

#: providers.md, qingbo, and the newer "Hailuo Series" page (``minimax-hailuo-2.3`` names):
#: top-level ``aspect_ratio`` 16:9, 9:16, 1:1, a common parameter of its T2V and I2V. The seed
#: page does not know it, so ``validate`` accepts it only with the account's model naming
#: "minimax" (the API it was documented with); offered on the 2.3 series' text-to-video and
#: image-to-video (the newer page documents no character reference).
ASPECT_RATIO = OptionSpec(
    "aspect_ratio", "Aspect ratio", "choice", ASPECT_RATIOS,
    help="16:9, 9:16 or 1:1; only with the account's model naming 'minimax' (qingbo's newer pages).",
)

MODEL_NAMINGS = ("seed", "minimax")

#: providers.md, qingbo: the seed page names the models ``hailuo-2.3``/``hailuo-2.3-fast``,
#: newer pages ``minimax-hailuo-2.3``/``minimax-hailuo-2.3-fast``. The account chooses which
#: id is sent; our model ids (and so prices and forms) stay the seed's either way. The other
#: models appear on the seed page only and keep their ids under both namings.
MODEL_NAMING = OptionSpec(
    "model_naming", "Model naming", "choice", MODEL_NAMINGS, default="seed",
    help="Which model ids qingbo is sent: 'seed' (hailuo-2.3) or 'minimax' (minimax-hailuo-2.3, newer pages).",
)

#: Model ids sent under model naming "minimax" (providers.md, qingbo); others are unchanged.
MINIMAX_NAMES = {"hailuo-2.3": "minimax-hailuo-2.3", "hailuo-2.3-fast": "minimax-hailuo-2.3-fast"}

# --- models ----------------------------------------------------------------------------------
#: The newer "Hailuo Series" page: "prompt ≤ 2000 chars" (see the module doc for the other models).
PROMPT_MAX = 2000

#: seeds/003 "Available Models" (6 s / 10 s), "Model-Specific Parameters" (resolution options
#: 768p, 1080p) and providers.md, qingbo ("1080p is 6 s only").
COMBOS_2_3 = ((6, "768p"), (10, "768p"), (6, "1080p"))
#: seeds/003 "Available Models": hailuo-02 768P default, 6 s / 10 s; its resolution tab is not on
#: the seed page, so only the default resolution is offered (conservative).
COMBOS_02 = ((6, "768p"), (10, "768p"))
#: seeds/003 "Available Models": T2V-01-Director 768P, 6 s.
COMBOS_T2V_DIRECTOR = ((6, "768p"),)
#: seeds/003 "Available Models": I2V-01-Director and S2V-01 720P, 6 s.
COMBOS_720 = ((6, "720p"),)


def _t2v(combos, *options: OptionSpec) -> ModeCapability:
    return ModeCapability("text-to-video", "Text-to-video", "none", combos, options=options)


def _i2v(combos, *options: OptionSpec) -> ModeCapability:
    return ModeCapability("image-to-video", "Image-to-video", "required", combos, options=options)


def _subject(combos, *options: OptionSpec) -> ModeCapability:
    return ModeCapability("subject-reference", "Character reference", "none", combos, options=(SUBJECT_IMAGE, *options))


#: seeds/003: "Hailuo 2.3, supports 4K and character reference" (no 4K value is among the
#: resolution options, so none is offered); text, image and character reference modes.
HAILUO_2_3 = ModelCapability(
    id="hailuo-2.3",
    label="Hailuo 2.3",
    modes=(
        _t2v(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT, ASPECT_RATIO),
        _i2v(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT, ASPECT_RATIO),
        _subject(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT),
    ),
    prompt_max_chars=PROMPT_MAX,
    notes="Sent as minimax-hailuo-2.3 when the account's model naming is 'minimax'.",
)

#: seeds/003 "Available Models" (768P default, 6 s / 10 s) and "Generation Modes" (text and image
#: for all models, character reference for the "hailuo-2.3 series"); 1080p (6 s only) and text-
#: to-video confirmed by the newer "Hailuo Series" page (minimax-hailuo-2.3-fast: 768p / 1080p,
#: actions generate / image2video) and qingbo's price list (providers.md, qingbo, "Price").
HAILUO_2_3_FAST = ModelCapability(
    id="hailuo-2.3-fast",
    label="Hailuo 2.3 Fast",
    modes=(
        _t2v(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT, ASPECT_RATIO),
        _i2v(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT, ASPECT_RATIO),
        _subject(COMBOS_2_3, PROMPT_OPTIMIZER, FAST_PRETREATMENT),
    ),
    prompt_max_chars=PROMPT_MAX,
    notes="Sent as minimax-hailuo-2.3-fast when the account's model naming is 'minimax'.",
)

#: seeds/003: "Hailuo 02, supports first/last frame"; "Generation Modes": First/Last frame is
#: hailuo-02 only.
HAILUO_02 = ModelCapability(
    id="hailuo-02",
    label="Hailuo 02",
    modes=(
        _t2v(COMBOS_02, PROMPT_OPTIMIZER, FAST_PRETREATMENT),
        _i2v(COMBOS_02, PROMPT_OPTIMIZER, FAST_PRETREATMENT),
        ModeCapability(
            "first-last-frame", "First and last frame", "required", COMBOS_02,
            options=(LAST_FRAME, PROMPT_OPTIMIZER, FAST_PRETREATMENT),
        ),
    ),
    prompt_max_chars=PROMPT_MAX,
    notes="768p only (other resolutions are not documented by qingbo for this model).",
)

#: seeds/003: "Director mode with camera language control" (camera moves written in the prompt).
#: Text-to-video only: the name says T2V and the maker's T2V-01-Director takes no image (the
#: "Generation Modes" table's "All" for image-to-video is not taken to include it).
T2V_01_DIRECTOR = ModelCapability(
    id="T2V-01-Director",
    label="T2V-01 Director",
    modes=(_t2v(COMBOS_T2V_DIRECTOR, PROMPT_OPTIMIZER),),
    prompt_max_chars=PROMPT_MAX,
    notes="Write camera moves in the prompt, e.g. [Pan left], [Push in].",
)

#: seeds/003: "Image-to-video director mode", 720P, 6 s. Image-to-video only (a first frame is
#: what the model is for).
I2V_01_DIRECTOR = ModelCapability(
    id="I2V-01-Director",
    label="I2V-01 Director",
    modes=(_i2v(COMBOS_720, PROMPT_OPTIMIZER),),
    prompt_max_chars=PROMPT_MAX,
    notes="Write camera moves in the prompt, e.g. [Pan left], [Push in].",
)

#: seeds/003: "Character reference mode for character consistency", 720P, 6 s. Character
#: reference only (the reference is what the model is for).
S2V_01 = ModelCapability(
    id="S2V-01",
    label="S2V-01",
    modes=(_subject(COMBOS_720, PROMPT_OPTIMIZER),),
    prompt_max_chars=PROMPT_MAX,
)

#: What a mode missing from a model means, by qingbo's "Generation Modes" table (seeds/003).
MODE_RULES = {
    "first-last-frame": "first and last frame is offered by hailuo-02 only",
    "subject-reference": "character reference is offered by the hailuo-2.3 series and S2V-01 only",
}

#: providers.md, qingbo, and qingbo's "Query Task Status": queued, processing, completed, failed,
#: cancelled (the American spelling "canceled" is tolerated).
STATE_MAP = {
    "queued": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELED,
    "canceled": TaskState.CANCELED,
}
