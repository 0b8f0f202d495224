"""The pathway, pure: the rules (`rules/`), the patient record read from FHIR JSON (`record`), the
evaluation of draft orders against the pathway (`evaluate`), and the cards that word its findings
(`cards`).

No Flask, no database, no network: given the same rules, record and date it gives the same answer. May
import `fhir` (reading helpers, R4B validation) and `protocol` (the card models) only.
"""
