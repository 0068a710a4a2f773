"""`python -m kpsemi ...`: see kpsemi/cli.py."""
from kpsemi.cli import main

main()
