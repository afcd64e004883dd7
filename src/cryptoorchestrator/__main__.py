from cryptoorchestrator.cli.main import run

run()
