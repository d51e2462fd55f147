from .cli import emulator_command

emulator_command()
