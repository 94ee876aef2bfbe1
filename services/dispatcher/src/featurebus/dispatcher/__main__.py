from featurebus.dispatcher.main import main

main()
