"""The retrospective audit: the live pathway run over a Bulk FHIR export, at population scale.

`lumbar-cds audit` reads Bulk Data NDJSON (a directory, a manifest, or a `$export` it runs itself with
SMART Backend Services), groups resources by patient through on-disk partitions, rebuilds each patient's
record as it stood on each order date, and judges every lumbar imaging order, spine-surgery referral and
lumbar operation with the live pathway code (through `adapter`, the one module that calls it). It also
computes the low back pain imaging measures of `rules/measures.yaml`, and writes a de-identified report
(JSON, CSV, and an HTML page with plots) with small cells suppressed. `synth` writes a synthetic
population to audit. Engines: `engine_local` (all cores of one machine) and `engine_spark` (Apache Spark).

May import `pathway`, `fhir`, `protocol`, `settings`, `netpolicy` and `telemetry`; never `http`, `store`,
`service` or `sandbox`, so it runs without a web app or a database.
"""
