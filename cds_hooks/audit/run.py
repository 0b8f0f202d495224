"""One audit from start to finish: input → engine → report files. The CLI and the tests call `run_audit`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cds_hooks.audit import report_files, report_html, report_model
from cds_hooks.audit.adapter import LivePathway
from cds_hooks.audit.audit_rules import load_measures
from cds_hooks.audit.judge import AuditOptions, PatientJudge
from cds_hooks.audit.ndjson import BulkInput, SourceError, discover
from cds_hooks.audit.partition import CATALOGUE_TYPES
from cds_hooks.audit.progress import Progress
from cds_hooks.pathway.rules import Rules, ServiceDef, load_rules
from cds_hooks.settings.config import Settings


@dataclass
class AuditRequest:
    out: Path
    source: Path | None = None
    fhir_server: str | None = None
    export_level: str = "system"  # system | patient | group
    group: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    period: tuple[date, date] | None = None
    profile: str | None = None
    service: str | None = None
    engine: str = "local"
    spark_master: str = "local[*]"
    workers: int | None = None
    samples: int = 0
    min_cell: int | None = None
    match_days: int = 30
    progress: bool | None = None
    workdir: Path | None = None


def audit_service(rules: Rules, wanted: str | None) -> ServiceDef:
    """The service whose prefetch the audit rebuilds: as asked, else the order-sign one."""
    if wanted is not None:
        if wanted not in rules.services:
            raise SourceError(f"no service {wanted!r}; choose one of {', '.join(rules.services)}")
        return rules.services[wanted]
    return next((s for s in rules.services.values() if s.hook == "order-sign"), next(iter(rules.services.values())))


def default_period(bulk: BulkInput) -> tuple[date, date]:
    """The twelve months up to the export's transaction time (else today)."""
    end = date.fromisoformat(bulk.transaction_time[:10]) if bulk.transaction_time else datetime.now(UTC).date()
    return end - timedelta(days=364), end


def _fetch(request: AuditRequest, settings: Settings, into: Path, progress: Progress,
           read_types: frozenset[str]) -> BulkInput:
    from cds_hooks.audit.bulk_client import BulkClient, ExportRequest

    with BulkClient(request.fhir_server or "", settings, progress) as client:
        if request.fhir_server is not None:
            # Only what the pathway reads (and the catalogue the report names clinics from) is exported.
            types = request.types or tuple(sorted(read_types | CATALOGUE_TYPES))
            export = ExportRequest(request.export_level, request.group, types, request.since)
            return client.export(export, into)
        bulk = discover(request.source) if request.source else BulkInput([])
        return client.download_manifest(bulk, into) if bulk.remote else bulk


def run_audit(request: AuditRequest, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings.from_env()
    rules = load_rules(settings.rules_dir, request.profile or settings.profile)
    measures = load_measures(rules)
    service = audit_service(rules, request.service)
    progress = Progress(request.progress)
    pathway = LivePathway(rules, service)
    request.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lumbar-audit-input-", dir=request.workdir) as scratch:
        if request.fhir_server is not None:
            bulk = _fetch(request, settings, Path(scratch), progress, pathway.read_types)
        elif request.source is not None:
            bulk = discover(request.source)
            if bulk.remote:
                bulk = _fetch(request, settings, Path(scratch), progress, pathway.read_types)
        else:
            raise SourceError("give a directory or manifest to audit, or --fhir-server")
        period = request.period or default_period(bulk)
        options = AuditOptions(period=period, match_days=request.match_days, samples=request.samples)
        judge = PatientJudge(pathway, measures, options)
        if request.engine == "spark":
            from cds_hooks.audit.engine_spark import run_spark

            run = run_spark(bulk, judge, request.spark_master)
        else:
            from cds_hooks.audit.engine_local import run_local

            run = run_local(bulk, judge, request.workers, request.workdir, progress)
        progress.close()
    k = request.min_cell if request.min_cell is not None else settings.audit_min_cell
    source = {"files": len(bulk.files), "bytes": bulk.total_bytes, "transactionTime": bulk.transaction_time,
              "errorFiles": len(bulk.error_files), "linesRead": run.scan.lines,
              "fromServer": request.fhir_server is not None}
    report = report_model.build(run.tally, rules, measures, period=period, k=k, source=source, engine=run.engine,
                                service=service.id, samples=request.samples)
    report_files.write_json(report, request.out / "report.json")
    report_files.write_csv(report, request.out / "report.csv")
    report_html.write_html(report, request.out / "report.html")
    return report
