from qbsync.entry import main

main()
