from ascend_quant.cli.app import main

main()
