"""The TUI's screens: the dashboard, a job, the catalogue, the submit form, and the modal ones; what every screen
gets from the app (base.py) and what the dashboard and the job view do to a job (actions.py)."""
