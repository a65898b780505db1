"""The Streamlit dashboard over a publish bundle (app.py + pages/); selection.py is its pure logic."""
