"""`flf2v tui`: the Textual dashboard. Widgets by domain; the data they show comes from flf2v_tui.screen_data."""
