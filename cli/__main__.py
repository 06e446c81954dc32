from tsfm.cli.main import main

main()
