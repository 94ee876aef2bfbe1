from featurebus.indexer.main import main

main()
