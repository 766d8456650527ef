from campaign.cli import main

main()  # `python -m campaign.cli`
