"""The authority console in the browser (`elbridge console serve`): server-rendered pages over
the ledger for licensing officers (read, write movements by hand, acknowledge alerts) and
auditors (read). See docs/console.md.

- `app`: `create_app(settings, engine)`, the Starlette application, its middleware and the
  pages of the modules that add to it.
- `auth`: the users file, scrypt passwords, the session secret.
- `render`: what every page uses: `render`, `require_role`, `current_user`, CSRF checks.
- `login`, `pages` (licences, a licence, alerts), `manual` (write-off, correction, reversal).
- `charts`: the SVG charts, drawn on the server.
- `process`: the console as a subprocess (tests, the demo)."""
