package sysinit

func supervisorMain() int { return 0 }
