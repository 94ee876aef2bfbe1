from featurebus.registry.main import main

main()
