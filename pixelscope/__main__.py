from pixelscope.cli import app

app(prog_name="pixelscope")
