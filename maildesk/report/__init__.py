"""The report's presentation: the single-file HTML report (`html.py`, Jinja2 with
autoescape, charts as inline SVG from matplotlib) and the digest mail to leads (`digest.py`).
The numbers themselves are `maildesk.services.kpis`'s."""
