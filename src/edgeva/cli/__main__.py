from edgeva.cli import main

main()
