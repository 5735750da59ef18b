package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/qrtalk/qrtalk/client"
)

func groupCreateCommand() *command {
	return &command{
		name: "group create", args: "<name> [member...]",
		summary: "create a group of contacts",
		about: `Creates a group of you and the given contacts, and tells them: the group's
name and members travel as signed, encrypted messages among the members
(the server only sees who receives what). Send to it by name with
'qrtalk send'. Members must be your contacts.
`,
		examples: "  qrtalk group create team bob carol\n  qrtalk send team \"hello all\"\n",
		run:      (*app).groupCreate,
	}
}

func (a *app) groupCreate(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 1, -1)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	if _, err := acc.Contact(ctx, pos[0]); err == nil {
		return usage("choose a name that is not a contact's", "a contact is named %q: a group of that name could not be told apart", pos[0])
	}
	g, err := acc.CreateGroup(ctx, pos[0], pos[1:])
	if err != nil {
		if g != nil {
			return fmt.Errorf("created %s, but telling its members failed: %w", g.Name, err)
		}
		return err
	}
	fmt.Fprintf(a.stdout, "Created %s: %s.\n", g.Name, a.memberNames(ctx, acc, g))
	return nil
}

func groupAddCommand() *command {
	return &command{
		name: "group add", args: "<group> <contact>",
		summary:  "add a contact to a group",
		about:    "Adds a contact to a group and tells every member, the new one included.\n",
		examples: "  qrtalk group add team dave\n",
		run: func(a *app, ctx context.Context, c *command, args []string) error {
			return a.groupChange(ctx, c, args, true)
		},
	}
}

func groupRemoveCommand() *command {
	return &command{
		name: "group remove", args: "<group> <member>",
		summary: "remove a member from a group",
		about: `Removes a member from a group and tells every member, the removed one
included. Later messages to the group are not sealed for them.
`,
		examples: "  qrtalk group remove team dave\n",
		run: func(a *app, ctx context.Context, c *command, args []string) error {
			return a.groupChange(ctx, c, args, false)
		},
	}
}

func (a *app) groupChange(ctx context.Context, c *command, args []string, add bool) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 2, 2)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	var g *client.Group
	if add {
		g, err = acc.AddMember(ctx, pos[0], pos[1])
	} else {
		g, err = acc.RemoveMember(ctx, pos[0], pos[1])
	}
	if err != nil {
		return err
	}
	verb := "Added"
	if !add {
		verb = "Removed"
	}
	fmt.Fprintf(a.stdout, "%s %s; %s now: %s.\n", verb, pos[1], g.Name, a.memberNames(ctx, acc, g))
	return nil
}

func (a *app) memberNames(ctx context.Context, acc *client.Account, g *client.Group) string {
	names := a.namer(ctx, acc)
	var out []string
	for _, m := range g.Members {
		out = append(out, names(m))
	}
	return strings.Join(out, ", ")
}

func groupsCommand() *command {
	return &command{
		name: "groups", args: "[--json]", alias: "group list",
		summary: "list your groups and their members",
		about: `Lists the groups you are in, with their members. --json prints a JSON array
of {name, id, members: [{user, name}], version}.
`,
		examples: "  qrtalk groups\n",
		run:      (*app).groups,
	}
}

type groupJSON struct {
	Name    string       `json:"name"`
	ID      string       `json:"id"`
	Members []memberJSON `json:"members"`
	Version int          `json:"version"`
}

type memberJSON struct {
	User string `json:"user"`
	Name string `json:"name"`
}

func (a *app) groups(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	list, err := acc.Groups(ctx)
	if err != nil {
		return err
	}
	names := a.namer(ctx, acc)
	if *asJSON {
		out := make([]groupJSON, 0, len(list))
		for _, g := range list {
			gj := groupJSON{Name: g.Name, ID: hex.EncodeToString(g.ID), Version: g.Version}
			for _, m := range g.Members {
				gj.Members = append(gj.Members, memberJSON{User: m.String(), Name: names(m)})
			}
			out = append(out, gj)
		}
		return a.printJSON(out)
	}
	if len(list) == 0 {
		fmt.Fprintln(a.stderr, "No groups yet: create one with 'qrtalk group create NAME MEMBER...'.")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tMEMBERS")
	for _, g := range list {
		fmt.Fprintf(tw, "%s\t%s\n", g.Name, a.memberNames(ctx, acc, g))
	}
	return tw.Flush()
}
