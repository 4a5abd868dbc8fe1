from minikern.kernel.main import main

main()
