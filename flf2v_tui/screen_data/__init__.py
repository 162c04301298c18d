"""What the TUI shows, computed without Textual: queue snapshots, job telemetry, log line indexes, the submit
form's parsing and the GPU samples. Every module here is plain Python and tested without the app."""
