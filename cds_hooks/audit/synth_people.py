"""Who is who in a synthetic population: patients' and clinicians' names, clinics and their places.

Made-up, and drawn from separate pools, so a test can look for every patient's name in a report
without meeting a clinician's or a clinic's. Not clinical content: no codes live here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

PATIENT_GIVEN = ("Aurelio", "Benedikta", "Casimira", "Dorotheo", "Evangelina", "Florentin", "Genoveva", "Hilarion",
                 "Ignatia", "Jovita", "Leopoldo", "Marcelina", "Nicanor", "Octavia", "Prudencio", "Quiteria",
                 "Rosalind", "Saturnino", "Teodora", "Ulrico", "Valentina", "Wenceslao", "Ximena", "Yolotli",
                 "Zenobia", "Anselmo", "Bernadine", "Clotilde", "Desiderio", "Eulalia")
PATIENT_FAMILY = ("Abernathy", "Bramwellton", "Castellanos", "Dunsworthy", "Etxeberria", "Fairweather",
                  "Gallardo-Ruiz", "Hollingbrook", "Iturralde", "Jankowska", "Kettleborough", "Lindqvist",
                  "Montgomerie", "Nakashima", "Oyelaran", "Pemberton-Shaw", "Quintanilla", "Ravensworth",
                  "Szczepanski", "Thistlewood", "Uzoamaka", "Vasconcelos", "Whitlingham", "Yamaguchi",
                  "Zabaleta", "Achterberg", "Blackthorne", "Cruikshank", "Delacroix-Ney", "Esterhazy")
CLINICIAN_GIVEN = ("Amara", "Bilal", "Chiara", "Deshawn", "Elif", "Farid", "Greta", "Hiroshi", "Imani", "Jonas",
                   "Keiko", "Luca", "Mirela", "Nnamdi", "Olga", "Pavel", "Rania", "Sunil", "Tamsin", "Viktor")
CLINICIAN_FAMILY = ("Okafor", "Lindgren", "Moreau", "Petrov", "Haddad", "Nguyen", "Kowalczyk", "Rossi", "Tanaka",
                    "Mensah", "Novak", "Ibrahim", "Sorensen", "Varga", "Oduya", "Brennan", "Castillo", "Iyer")
CLINICS = ("Riverside Family Medicine", "Northgate Primary Care", "Harbour Spine Centre", "Elm Street Health",
           "Westfield Medical Group", "Lakeview Community Clinic", "Summit Orthopaedics", "Old Mill Health Centre")


@dataclass(frozen=True)
class Clinic:
    organization: dict[str, Any]
    location: dict[str, Any]
    practitioners: tuple[dict[str, Any], ...]


def clinics(rng: random.Random) -> list[Clinic]:
    """Eight clinics, each with its location and two to six practitioners."""
    out = []
    clinician = 0
    for i, name in enumerate(CLINICS):
        org = {"resourceType": "Organization", "id": f"org-{i + 1}", "active": True, "name": name}
        loc = {"resourceType": "Location", "id": f"loc-{i + 1}", "status": "active", "name": f"{name}, main site",
               "managingOrganization": {"reference": f"Organization/{org['id']}"}}
        people = []
        for _ in range(rng.randint(2, 6)):
            clinician += 1
            people.append({"resourceType": "Practitioner", "id": f"prac-{clinician}", "active": True,
                           "name": [{"family": rng.choice(CLINICIAN_FAMILY), "given": [rng.choice(CLINICIAN_GIVEN)],
                                     "prefix": ["Dr"]}]})
        out.append(Clinic(org, loc, tuple(people)))
    return out


def patient(rng: random.Random, index: int, born: str) -> dict[str, Any]:
    pid = f"pt-{rng.getrandbits(64):016x}"
    gender = rng.choice(("female", "male", "female", "male", "other"))
    return {
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": "urn:example:mrn", "value": f"MRN{rng.getrandbits(40):012d}"}],
        "name": [{"family": rng.choice(PATIENT_FAMILY), "given": [rng.choice(PATIENT_GIVEN)]}],
        "gender": gender, "birthDate": born,
        "telecom": [{"system": "phone", "value": f"555-{rng.randint(1000000, 9999999)}"}],
    }
