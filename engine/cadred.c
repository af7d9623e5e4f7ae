/*  cadred: the node. (Wiring comes with the actor runtime.) */
int
main(void)
{
    return 0;
}
