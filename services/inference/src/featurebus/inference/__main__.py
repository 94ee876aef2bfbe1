from featurebus.inference.main import main

main()
