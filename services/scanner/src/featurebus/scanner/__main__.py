from featurebus.scanner.main import main

main()
