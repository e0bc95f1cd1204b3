"""Agent mail: what an agent's mail to the desk says, decided without a database.

Pure decisions over plain data (no SQLAlchemy, aiosmtpd, imapclient, Jinja2 or Typer):
`commands` reads the `#commands` on the first lines, `strip` finds the agent's new words
(quotes, our notification and the agent's signature removed), `classify` decides whether a
mail is an authenticated agent reply, an agent's forward that opens a ticket, a refused
attempt, or not agent mail at all. Wiring into the pipeline lives elsewhere. Import
submodules directly.
"""
