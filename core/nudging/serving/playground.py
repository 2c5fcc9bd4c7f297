"""The playground page served at `/`: plain HTML and JavaScript, no build step.

It streams a chat answer from this server with the nudger's words highlighted (each SSE chunk says
which model wrote it) and the stats line under it, optionally beside the base alone (γ = 0).
"""

from __future__ import annotations

from importlib.resources import files

PAGE = files(__package__).joinpath("static", "playground.html").read_text(encoding="utf-8")
