"""The TUI's screens: the dashboard, a job, the catalogue, the submit form, and the modal ones."""
