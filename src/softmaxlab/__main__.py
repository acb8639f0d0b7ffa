from softmaxlab.cli import run

run()
