"""Governance of the rules for a CDS committee and a knowledge repository: the rules published as FHIR
knowledge artifacts (`fhir_*`: a Library, PlanDefinitions, an ActivityDefinition, ValueSets, CodeSystems),
the change diff between two rules directories (`diff`, `diff_render`, `gitref`), and the pathway document
(`doc_html`, `doc_markdown`, `flow`) generated from `rules/`.

Everything walks the validated rules models (`walk`, `scope`) instead of naming today's fields, so new
settings, value sets and wording appear without code changes. May import `pathway` (the rules) and `fhir`
(R4B validation) only; no HTTP, no database.
"""
