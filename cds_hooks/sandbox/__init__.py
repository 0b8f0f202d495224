"""The developer sandbox page (/sandbox): scenario fixtures with dates resolved, a timeline of the record,
what-if changes, and the page's template and static files.

Sits on top of the HTTP edge (it reuses the API's request handling); may import any layer below `ops`.
"""
