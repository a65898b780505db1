"""The Streamlit dashboard over a publish bundle (app.py + views/); selection.py is its pure logic."""
