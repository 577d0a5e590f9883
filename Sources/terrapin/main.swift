print("terrapin")
