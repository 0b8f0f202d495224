"""The facts about the patient that every draft order's evaluation shares, computed once per call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_hooks.pathway.conservative import Care, episode_care
from cds_hooks.pathway.episode import Episode, current_episode
from cds_hooks.pathway.facts import Evidence, PatientRecord
from cds_hooks.pathway.findings import Reason, age_years
from cds_hooks.pathway.red_flags import RedFlag, record_red_flags
from cds_hooks.pathway.rules import Rules


@dataclass
class Context:
    record: PatientRecord
    rules: Rules
    today: date
    population: list[Evidence]  # active back-pain diagnoses
    episode: Episode
    care: Care
    red_flags: list[RedFlag]
    prior_surgery: list[Evidence]
    age: int | None

    def outside_ages(self) -> bool:
        bounds = self.rules.profile.population
        if self.age is None:
            return False  # unknown age: judged as an adult, and the basis says age was not available
        return (bounds.min_age_years is not None and self.age < bounds.min_age_years) or (
            bounds.max_age_years is not None and self.age > bounds.max_age_years)

    def missing_modalities(self, expected: list[str]) -> list[Reason]:
        documented = self.care.documented()  # the card words each modality (its short name, or its title)
        return [Reason("missing_modality", {"modality": m}) for m in expected if m not in documented]

    def found(self) -> list[Evidence]:
        return [*self.episode.conditions, *self.care.evidence]

    def basis(self) -> list[Reason]:
        if not self.care.earlier:
            return []
        return [Reason("earlier_episode", {"date": self.episode.start.isoformat(),
                                           "gap": f"{self.rules.pathway.episode.gap_days} days"})]

    def pt_under_way(self) -> set[str]:
        """A PT referral is no alternative for a patient already having or referred to PT."""
        return {"replace-with-pt"} if self.care.sessions or self.care.pt_ordered else set()


def build_context(record: PatientRecord, rules: Rules, today: date) -> Context:
    episode = current_episode(record, rules, today)
    # A status code charted as a Procedure (arthrodesis status, history of laminectomy) says the same as the
    # operation's own code; both count only when completed and dated up to today.
    operations = record.select("lumbar-spine-surgery", "Procedure") + record.select("prior-lumbar-surgery", "Procedure")
    prior = record.select("prior-lumbar-surgery", "Condition") + [
        e for e in operations if e.status == "completed" and (e.start is None or e.start <= today)
    ]
    return Context(
        record=record, rules=rules, today=today,
        population=[e for e in record.select("population", "Condition") if e.active],
        episode=episode, care=episode_care(record, rules, episode, today),
        red_flags=record_red_flags(record, rules, today), prior_surgery=prior,
        age=age_years(record.birth_date, today),
    )
