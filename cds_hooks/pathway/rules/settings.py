"""rules/pathway.yaml: the red-flag categories with their time windows, the episode, and the profiles' settings.

Every threshold carries a `source` string saying where the number comes from (a guideline, a quality
measure, or local pathway policy), so `rules check`, the docs and the governance export can show it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds_hooks.pathway.rules.base import RuleId, Strict

_SOURCE = Field(min_length=3)


class MedicationRule(Strict):
    """When medications in a red-flag category count.

    `cumulative-days`: at least `min_days` days of use inside the last `within_days` days (HEDIS/CMS166
    prolonged glucocorticoids). `current`: in use at some point in the last `within_days` days.
    """

    rule: Literal["cumulative-days", "current"]
    min_days: int | None = Field(default=None, ge=1)
    within_days: int = Field(ge=1)
    source: str = _SOURCE


class VitalSignRule(Strict):
    """A vital-sign reading that is itself the red flag (a body temperature at or above `min_value`)."""

    category: str  # the vital-sign value set category whose codes are read
    min_value: float
    unit: str  # UCUM unit of min_value
    source: str = _SOURCE


class RedFlagCategory(Strict):
    label: str
    # Look back this many days from today (None: any time). Measured from the date chosen by `dated_by`.
    lookback_days: int | None = Field(ge=1)
    # `onset`: onset[x], else recordedDate (a new feature: chronic incontinence since 2015 is not new).
    # `latest`: a state (IV drug use, long-term steroids): today while the Condition is active,
    # else the latest of onset, recordedDate and abatement (the last time it was documented).
    dated_by: Literal["onset", "latest"]
    # Whether a resolved, inactive or in-remission Condition still counts (history counts).
    counts_when_inactive: bool
    # ICD-10-CM 7th characters that count (initial encounter); None: the 7th character does not matter.
    icd10_seventh_characters: list[str] | None = None
    medications: MedicationRule | None = None
    vital_sign: VitalSignRule | None = None
    source: str = _SOURCE


class EpisodeSettings(Strict):
    # A new episode starts after at least this many days without back-pain evidence (HEDIS LBP: 180).
    gap_days: int = Field(ge=1)
    source: str = _SOURCE


class MedicationSettings(Strict):
    # Days one prescription covers when it states no duration and is no longer active.
    default_supply_days: int = Field(ge=1)
    source: str = _SOURCE


class PopulationSettings(Strict):
    # Outside these ages (in whole years, inclusive) the service says nothing. None: no bound.
    min_age_years: int | None = Field(ge=0)
    max_age_years: int | None = Field(ge=0)
    source: str = _SOURCE


class OlderAgeSettings(Strict):
    # From this age (inclusive) the listed imaging modalities are not premature (ACR: elderly individual).
    min_age_years: int = Field(ge=1)
    releases: list[str] = Field(min_length=1)
    source: str = _SOURCE


class FormalPtSettings(Strict):
    # Sessions on distinct days, dated up to today, that make a course of formal PT.
    min_sessions: int = Field(ge=1)
    source: str = _SOURCE


class RecordStatuses(Strict):
    condition_clinical_excluded: list[str]
    condition_verification_excluded: list[str]
    procedure_counted: list[str]
    encounter_counted: list[str]
    medication_excluded: list[str]
    medication_ongoing: list[str]  # still being taken: no end date means "up to today"
    service_request_counted: list[str]
    imaging_excluded: list[str]
    observation_counted: list[str]


class ImagingSettings(Strict):
    # NICE NG59 1.1.4: no routine imaging in non-specialist settings, no week count.
    warn_without_red_flags: bool
    min_symptom_weeks: int | None = Field(ge=0)
    conservative_trial_weeks: int | None = Field(ge=0)
    formal_pt_required: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    duplicate_lookback_months: int | None = Field(ge=0)
    # Ordered modality -> prior modalities that make it a repeat (a trauma CT does not make an MRI a repeat).
    repeat_modalities: dict[str, list[str]]
    suggest_mri_without_contrast: bool


class SurgerySettings(Strict):
    min_formal_pt_weeks: int | None = Field(ge=0)
    require_conservative_care: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    window_months: int | None = Field(ge=0)
    # NICE NG59: do not offer spinal fusion for low back pain except in a randomised controlled trial.
    warn_on_fusion: bool = False


class Profile(Strict):
    title: str
    description: str
    population: PopulationSettings
    older_age: OlderAgeSettings | None = None
    formal_pt: FormalPtSettings
    imaging: ImagingSettings
    surgery: SurgerySettings
    # A modality that counts only together with one of the listed ones (NICE: manual therapy only
    # within a package that includes exercise).
    modality_requires: dict[str, list[str]] = Field(default_factory=dict)
    red_flags_silence: list[RuleId]
    citations: dict[RuleId, list[str]]


# The appropriateness rating an order gets when a rule fires on it (pathway.yaml `ratings`).
FindingRating = Literal["appropriate", "not-appropriate"]


class Pathway(Strict):
    default_profile: str
    red_flags: dict[str, RedFlagCategory]
    modalities: dict[str, str]
    episode: EpisodeSettings
    medications: MedicationSettings
    record_statuses: RecordStatuses
    ratings: dict[RuleId, FindingRating]
    profiles: dict[str, Profile]

    @property
    def red_flag_categories(self) -> dict[str, str]:
        """Category -> the label clinicians read."""
        return {name: flag.label for name, flag in self.red_flags.items()}
