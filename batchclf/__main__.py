from batchclf.cli import main

main()
